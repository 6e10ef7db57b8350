"""Data-subject rights: requests, verification, deadlines, fulfilment, receipts."""
