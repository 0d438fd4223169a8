
6cfb2563fd08e312˛
Btype.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment∑
default/web/http"åU

	eu-west-1
eu-west-1a


10.0.0.1ê?web-0


10.0.0.2ê?web-18

	eu-west-1
eu-west-1b(


fd00::1ê?web-2
empty(