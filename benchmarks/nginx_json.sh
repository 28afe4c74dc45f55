# Sourced by the benchmark scripts: the fixed-JSON nginx backend they all measure against.

# json_nginx_conf DIR PORT: write DIR/nginx.conf, an nginx on 127.0.0.1:PORT that answers
# every request 200 with a small fixed JSON body (the backend that costs nothing).
json_nginx_conf() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF2
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        location / { default_type application/json; return 200 '{"message":"hello"}'; }
    }
}
EOF2
}
