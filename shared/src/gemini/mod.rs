//! Gemini REST client.
