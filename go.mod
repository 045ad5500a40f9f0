module github.com/dkm-operator/dkm-operator

go 1.26.0
