"""Test fakes shared by the suite and notebooks: real loopback servers, scripted replies."""
