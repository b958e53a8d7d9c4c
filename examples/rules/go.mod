module github.com/shanhai-edge/shanhai/examples/rules

go 1.24

require github.com/shanhai-edge/shanhai/sdk/go v0.0.0

replace github.com/shanhai-edge/shanhai/sdk/go => ../../sdk/go
