"""3-D volumes: reading and writing, DICOM, registration, transforms."""
