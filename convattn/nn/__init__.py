"""The networks and their attention: the attention interface (``interface``), convolutional
self-attention (``self_attention``), the channel-attention baselines
(``channel_attention``) and the registry of named CIFAR-10 networks (``models``)."""
