"""What the TestIO data is, independent of how it is fetched or stored: records, vocabulary,
credential scrubbing. Imported by the client, the warehouse and the sync core alike."""
