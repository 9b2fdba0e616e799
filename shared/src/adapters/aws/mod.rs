//! AWS adapters: DynamoDB (dedupe lease, results table), SQS (the events queue), S3 (messages too
//! large for it) and Secrets Manager (signing secrets, the Gemini API key).

pub mod dynamodb_dedupe;
pub mod dynamodb_results;
mod dynamodb_results_read;
pub mod s3_payloads;
pub mod secrets_manager;
pub mod sqs;
