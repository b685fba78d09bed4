"""/v1/feedback: thumbs up/down (with an optional corrected answer) that becomes the next training file."""
