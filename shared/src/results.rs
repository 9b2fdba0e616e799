//! Batch results JSONL model and streaming parser.
