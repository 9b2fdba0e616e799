//! AWS adapters: DynamoDB (dedupe lease, results table), SQS (the events queue) and Secrets
//! Manager (signing secrets, the Gemini API key).

pub mod dynamodb_dedupe;
pub mod dynamodb_results;
pub mod secrets_manager;
pub mod sqs;
