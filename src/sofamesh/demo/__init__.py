"""The demo mesh (`python -m sofamesh.demo`) and the small apps it runs."""
