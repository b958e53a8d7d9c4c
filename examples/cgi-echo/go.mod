module github.com/shanhai-edge/shanhai/examples/cgi-echo

go 1.24
