"""Small services under the routers: what a handler does beyond reading its request."""
