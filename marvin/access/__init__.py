"""The access domain: the roles registry's GitLab mirror, grants, requests and the review."""
