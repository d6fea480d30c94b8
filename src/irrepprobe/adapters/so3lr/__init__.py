"""SO3LR (so3krates-torch): its shipped pretrained weights, by name or file."""
