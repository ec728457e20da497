module labkit.local/pause

go 1.22
