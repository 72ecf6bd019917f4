"""Chapter 10 graded questions (to be written)."""
