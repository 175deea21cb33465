"""HTTP shared by every server of ours: the server, the rules every app applies, authentication."""
