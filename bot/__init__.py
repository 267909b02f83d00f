"""Code the Rasa server loads: input channels and NLU components."""
