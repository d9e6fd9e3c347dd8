"""Camera, recorder and access-controller events straight from the devices' HTTP event
streams (Hikvision ISAPI alertStream, Dahua eventManager attach), without a bridge."""
