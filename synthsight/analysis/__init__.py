"""Analysis of images and features: image statistics of generator families vs natural photographs."""
