"""The stack's config as the user wrote it: parsed, typed and checked, every error naming its key."""
