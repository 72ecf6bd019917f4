"""Chapter 08 graded questions (to be written)."""
