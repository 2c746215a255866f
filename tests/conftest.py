"""The fast tests use the shared test bed's fixtures (`lan`, `bridge_lan`) and its rule that
root-only tests (marked `netns`, `vm` or `root`) are skipped for other users."""

pytest_plugins = ["testbed.plugin"]
