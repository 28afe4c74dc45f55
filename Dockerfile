FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY atkproxy ./atkproxy
RUN pip install --no-cache-dir . && mkdir -p /var/lib/atkproxy /etc/atkproxy \
    && chown 65532:65532 /var/lib/atkproxy
# the job store on the volume the image prepares (the built-in default is relative)
ENV ATKPROXY_STORE__URL=sqlite:////var/lib/atkproxy/jobs.db
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["atkproxy"]
CMD ["serve", "--config", "/etc/atkproxy/config.yaml"]
