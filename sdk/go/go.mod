module github.com/shanhai-edge/shanhai/sdk/go

go 1.24
