"""nntui's terminal side: the Textual app and the click CLI."""
