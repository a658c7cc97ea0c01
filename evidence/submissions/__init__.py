"""Footage from the public: invitations, chunked uploads, quarantine and review
(docs/public-submissions.md)."""
