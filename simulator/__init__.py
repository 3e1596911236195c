"""Self-play between a user model and a stock assistant, seeded by scenario files."""
