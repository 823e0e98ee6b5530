"""Service endpoints: health and the OpenAPI document."""
