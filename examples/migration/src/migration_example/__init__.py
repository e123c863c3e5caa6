"""Two small apps: `orders` (a provider) and `shop` (calls orders, and serves checkouts)."""
