"""What an image is: namespaces, names, descriptors, labels, the Image aggregate.

Standard library, pydantic and eventsourcing.domain only; no I/O.
"""
