"""Editing: the operations on codes (manipulate) and the `swapbench edit` sheets made from them."""
