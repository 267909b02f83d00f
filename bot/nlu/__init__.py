"""Custom NLU components for one assistant that reads Chinese and English."""
