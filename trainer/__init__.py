"""Turn prepared conversations into a versioned user-model adapter (TRL SFT + LoRA / QLoRA)."""
