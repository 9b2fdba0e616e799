//! AWS adapters: DynamoDB (dedupe lease, results table), SQS (the events queue), S3 (messages too
//! large for it, copies of generated videos), Secrets Manager (signing secrets, the Gemini API key) and EventBridge
//! (downstream events).

pub mod dynamodb_dedupe;
mod dynamodb_items;
pub mod dynamodb_results;
mod dynamodb_results_read;
pub mod eventbridge;
pub mod s3_objects;
pub mod s3_payloads;
pub mod secrets_manager;
pub mod sqs;
