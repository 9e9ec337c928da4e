# logistic-r: a logistic regression with glm on the mounted cohort.
#
# Reads every *.csv under /data/cohort/, the parameter `outcome` from /input/params.json and, on
# a sequential route, the previous stops' estimates from /input/state/state.csv. Models
# `outcome ~ age + bmi + sex + smoker` (binomial, logit link), where the outcome is 1 when the
# patient's diagnosis is the one named. Writes
#   /output/coefficients.csv  term, estimate, std_error, z_value, p_value (this stop's fit)
#   /output/model.csv         n_obs, df_null, df_residual, aic (this stop's fit)
#   /output/pooled.csv        term, estimate, std_error: inverse-variance pooling of every
#                             stop's estimates so far (a fixed-effect meta-analysis)
#   /output/state.csv         stop (stop-1 …), term, estimate, std_error: every stop's fit so far
# Numbers are rounded to 6 decimals: enough for the model, and never a digit run that an output
# check could take for an identifier.

params <- local({
  text <- if (file.exists("/input/params.json")) paste(readLines("/input/params.json", warn = FALSE), collapse = "") else "{}"
  value <- regmatches(text, regexec('"outcome"\\s*:\\s*"([^"]*)"', text))[[1]]
  list(outcome = if (length(value) == 2) value[2] else "diabetes")
})

files <- sort(list.files("/data/cohort", pattern = "\\.csv$", full.names = TRUE))
if (length(files) == 0) stop("no CSV file in /data/cohort")
cohort <- do.call(rbind, lapply(files, read.csv, stringsAsFactors = FALSE))
cohort$outcome <- as.integer(cohort$diagnosis == params$outcome)
cohort$sex <- factor(cohort$sex, levels = c("F", "M"))
cohort$smoker <- factor(cohort$smoker, levels = c("no", "yes"))

fit <- glm(outcome ~ age + bmi + sex + smoker, family = binomial(link = "logit"), data = cohort)
table <- summary(fit)$coefficients
local_fit <- data.frame(
  term = rownames(table),
  estimate = round(table[, 1], 6),
  std_error = round(table[, 2], 6),
  z_value = round(table[, 3], 6),
  p_value = round(table[, 4], 6),
  stringsAsFactors = FALSE
)
write.csv(local_fit, "/output/coefficients.csv", row.names = FALSE, quote = FALSE)
write.csv(
  data.frame(n_obs = nobs(fit), df_null = fit$df.null, df_residual = fit$df.residual, aic = round(fit$aic, 6)),
  "/output/model.csv", row.names = FALSE, quote = FALSE
)

# Stops are labelled `stop-1`, `stop-2` …: a column of small whole numbers beside the terms
# would look like counts to the station's checks (and fail them), which is right of them.
stops <- if (file.exists("/input/state/state.csv")) read.csv("/input/state/state.csv", stringsAsFactors = FALSE) else
  data.frame(stop = character(), term = character(), estimate = numeric(), std_error = numeric())
this_stop <- if (nrow(stops) == 0) 1L else max(as.integer(sub("^stop-", "", stops$stop))) + 1L
stops <- rbind(stops, data.frame(stop = paste0("stop-", this_stop), term = local_fit$term, estimate = local_fit$estimate, std_error = local_fit$std_error))
write.csv(stops, "/output/state.csv", row.names = FALSE, quote = FALSE)

pooled <- do.call(rbind, lapply(local_fit$term, function(term) {
  rows <- stops[stops$term == term, ]
  weights <- 1 / rows$std_error^2
  data.frame(
    term = term,
    estimate = round(sum(weights * rows$estimate) / sum(weights), 6),
    std_error = round(sqrt(1 / sum(weights)), 6)
  )
}))
write.csv(pooled, "/output/pooled.csv", row.names = FALSE, quote = FALSE)
message(sprintf("logistic-r: %d patients, %d terms, stop %d", nobs(fit), nrow(local_fit), this_stop))
