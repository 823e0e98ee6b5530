"""Posts in, digests out: the publisher's side of the newsletter."""
