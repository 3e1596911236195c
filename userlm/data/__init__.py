"""Real human-AI conversations in, user-model training data out."""
