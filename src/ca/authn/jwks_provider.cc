#include "ca/authn/jwks_provider.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/file_util.h"

namespace meshid::ca {
namespace {

constexpr auto kFileCheckInterval = std::chrono::seconds(1);
constexpr auto kMinRefreshGap = std::chrono::seconds(30);

size_t appendBody(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > pki::kMaxJwksBytes)
    return 0;  // aborts the transfer
  body->append(data, size * n);
  return size * n;
}

}  // namespace

Result<std::shared_ptr<const pki::Jwks>> FileJwksProvider::current() {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (jwks_ && now - checked_ < kFileCheckInterval) {
    return jwks_;
  }
  checked_ = now;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(path_, ec);
  if (jwks_ && !ec && mtime == loaded_mtime_) {
    return jwks_;
  }
  auto text = readFile(path_, pki::kMaxJwksBytes);
  auto parsed = text.ok() ? pki::parseJwks(*text) : Result<pki::Jwks>(text.error());
  if (!parsed.ok()) {
    if (jwks_) {
      spdlog::error("JWKS file refused, keeping the previous keys path={} error={}", path_.string(),
                    parsed.error().message);
      loaded_mtime_ = mtime;  // do not re-read the same broken file every second
      return jwks_;
    }
    return Error::unavailable(
        fmt::format("no usable JWKS in {}: {}", path_.string(), parsed.error().message));
  }
  for (const auto& note : parsed->notes)
    spdlog::info("JWKS note path={} {}", path_.string(), note);
  jwks_ = std::make_shared<const pki::Jwks>(std::move(parsed).value());
  loaded_mtime_ = mtime;
  spdlog::info("JWKS loaded path={} keys={}", path_.string(), jwks_->size());
  return jwks_;
}

UrlJwksProvider::UrlJwksProvider(std::string url, std::filesystem::path ca_file, Seconds refresh)
    : url_(std::move(url)), ca_file_(std::move(ca_file)), refresh_(refresh) {
  if (auto r = fetch(); !r.ok()) {
    spdlog::error("JWKS fetch failed url={} error={}", url_, r.error().message);
  }
  thread_ = std::thread([this] { run(); });
}

UrlJwksProvider::~UrlJwksProvider() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Result<void> UrlJwksProvider::fetch() {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl)
    return Error::internal("cannot start an HTTP client");
  std::string body;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url_.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, appendBody);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
  if (!ca_file_.empty())
    curl_easy_setopt(curl.get(), CURLOPT_CAINFO, ca_file_.c_str());
  CURLcode rc = curl_easy_perform(curl.get());
  {
    std::lock_guard lock(mu_);
    last_fetch_ = std::chrono::steady_clock::now();
  }
  if (rc != CURLE_OK) {
    return Error::unavailable(
        fmt::format("GET {}: {}", url_, errbuf[0] ? errbuf : curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status != 200)
    return Error::unavailable(fmt::format("GET {}: HTTP {}", url_, status));
  MESHID_ASSIGN_OR_RETURN(pki::Jwks jwks, pki::parseJwks(body));
  auto fresh = std::make_shared<const pki::Jwks>(std::move(jwks));
  std::lock_guard lock(mu_);
  jwks_ = std::move(fresh);
  last_error_.clear();
  spdlog::info("JWKS fetched url={} keys={}", url_, jwks_->size());
  return okResult();
}

Result<std::shared_ptr<const pki::Jwks>> UrlJwksProvider::current() {
  std::lock_guard lock(mu_);
  if (!jwks_) {
    return Error::unavailable(fmt::format("no JWKS fetched from {} yet{}", url_,
                                          last_error_.empty() ? "" : ": " + last_error_));
  }
  return jwks_;
}

void UrlJwksProvider::refreshSoon() {
  std::lock_guard lock(mu_);
  if (std::chrono::steady_clock::now() - last_fetch_ >= kMinRefreshGap) {
    wake_ = true;
    cv_.notify_all();
  }
}

void UrlJwksProvider::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    // Without keys, retry every 5 s; with keys, every `refresh`.
    auto wait = jwks_ ? std::chrono::duration_cast<std::chrono::seconds>(refresh_)
                      : std::chrono::seconds(5);
    cv_.wait_for(lock, wait, [this] { return stopping_ || wake_; });
    if (stopping_)
      return;
    wake_ = false;
    lock.unlock();
    auto r = fetch();
    lock.lock();
    if (!r.ok()) {
      last_error_ = r.error().message;
      spdlog::error("JWKS refresh failed, keeping the previous keys url={} error={}", url_,
                    r.error().message);
    }
  }
}

}  // namespace meshid::ca
