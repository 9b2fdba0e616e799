pub mod fake_gemini;
