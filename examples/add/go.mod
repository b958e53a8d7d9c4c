module github.com/shanhai-edge/shanhai/examples/add

go 1.24
