"""Thin HTTP handlers, one module per API style: parse -> authorize -> service -> response."""
