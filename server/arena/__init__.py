"""The blind arena: two anonymous arms answer the same question, a person votes, a leaderboard ranks arms."""
