"""Audio loading and writing, dataset preparation and reading, SoundFont rendering."""
