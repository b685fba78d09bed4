"""Profiles: named arms (model or adapter + knowledge bases + system prompt + sampling) served as models."""
