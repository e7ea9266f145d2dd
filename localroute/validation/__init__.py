"""Stage 3: deterministic checks and the validation model's verdict."""
