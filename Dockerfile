# sqlgate: the gateway alone (MySQL runs elsewhere: set SQLGATE_MYSQL_URL).
#   docker build -t sqlgate .
#   docker run -p 8080:8080 -e SQLGATE_MYSQL_URL=mysql://app:pass@db:3306/app \
#     -e SQLGATE_CREDENTIALS_FILE=/etc/sqlgate/credentials.yaml \
#     -v $PWD/credentials.yaml:/etc/sqlgate/credentials.yaml:ro sqlgate
# Listening on 0.0.0.0 needs a credentials file (or SQLGATE_ALLOW_INSECURE=true).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen gen
COPY server server
COPY client client
COPY bench bench
COPY console console
COPY scripts/build-console.ts scripts/
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    SQLGATE_LISTEN=0.0.0.0:8080 \
    SQLGATE_DATA_DIR=/var/lib/sqlgate
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# The ingest write-ahead log lives in SQLGATE_DATA_DIR: mount a volume there
# for BUFFERED writes to survive the container.
RUN mkdir -p /var/lib/sqlgate && chown node:node /var/lib/sqlgate
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1's child-free main process: SIGTERM reaches the gateway,
# which drains its calls (SQLGATE_SHUTDOWN_GRACE_MS) and exits.
CMD ["node", "dist/server/main.js"]
