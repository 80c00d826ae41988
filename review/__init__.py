"""The review queue: claims under a lease, answers, and the review chain (second opinion,
escalation, gold). It reads cases and predictions and hands every change of a case's state to
`reviewplatform.lifecycle`."""
