FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY atkproxy ./atkproxy
RUN pip install --no-cache-dir . && mkdir -p /var/lib/atkproxy /etc/atkproxy \
    && chown 65532:65532 /var/lib/atkproxy
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["atkproxy"]
CMD ["serve", "--config", "/etc/atkproxy/config.yaml"]
