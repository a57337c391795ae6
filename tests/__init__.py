"""canaryserve tests: unit/ (pure logic), e2e/ (a real server), interop/ (third-party clients)."""
