"""The bottom layer: small helpers every package may import; it imports nothing of ours."""
