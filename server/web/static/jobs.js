// Fine-tuning jobs page: the jobs list (GET /v1/fine_tuning/jobs), a training file checked in the browser
// (a report of counts and errors by line) then uploaded (POST /v1/files, purpose fine-tune), and the form
// that creates a job (POST /v1/fine_tuning/jobs) with OpenAI's hyper-parameters and the lora / training
// extensions, each empty field meaning the default it shows.
//
// The API validates a training file only once a job is created (the job then fails with the bad line in
// `error.param`), so the report is made here, by the same rules as finetune/data.py's parse_record; the
// server's own check (with the tokenizer: lengths, truncation) is in the job's events.
"use strict";
(() => {
  const { t, api, el, fmt } = RT;
  const ACTIVE = ["validating_files", "queued", "running"];
  const MAX_ERRORS = 200; // collected; the first SHOWN_ERRORS are listed
  const SHOWN_ERRORS = 50;

  // ---- the training-file check (finetune/data.py, without the tokenizer) ------------------------

  class DataError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  const ROLES = ["system", "user", "assistant"];
  const RESULT_ROLES = ["tool", "function"];
  const MESSAGE_KEYS = ["role", "content", "name", "weight", "tool_calls", "function_call", "tool_call_id"];
  const SHAREGPT_ROLES = { system: "system", human: "user", user: "user", gpt: "assistant", assistant: "assistant" };
  const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  function jsonType(v) {
    if (isObject(v)) return "an object";
    if (Array.isArray(v)) return "an array";
    if (typeof v === "string") return "a string";
    if (typeof v === "boolean") return "a boolean";
    if (v === null) return "null";
    return "a number";
  }
  const repr = (v) => (typeof v === "string" ? `'${v}'` : JSON.stringify(v) ?? String(v));

  function text(value, where, blankOk) {
    if (value === undefined || value === null) throw new DataError("empty_content", `${where} is missing`);
    if (typeof value !== "string") throw new DataError("invalid_message", `${where} must be a string, got ${jsonType(value)}`);
    if (!blankOk && !value.trim()) throw new DataError("empty_content", `${where} is empty`);
    return value;
  }

  function content(value, where) {
    if (Array.isArray(value)) {
      value = value
        .map((part, index) => {
          if (!isObject(part) || !("type" in part)) throw new DataError("invalid_message", `${where}.content[${index}] must be a content part`);
          if (part.type !== "text") throw new DataError("unsupported_feature", `${where}.content[${index}] is ${repr(part.type)}; only text is`);
          return text(part.text, `${where}.content[${index}].text`, true);
        })
        .join("");
    }
    return text(value, `${where}.content`);
  }

  const FUNCTION_KEYS = ["name", "description", "parameters", "strict"];

  /** The names of the record's `tools` (or legacy `functions`), each definition checked. */
  function checkTools(record) {
    const given = ["tools", "functions"].filter((key) => record[key] != null);
    if (given.length === 2) throw new DataError("invalid_tools", "give 'tools' or the legacy 'functions', not both");
    if (!given.length) return new Set();
    const key = given[0];
    if (!Array.isArray(record[key])) throw new DataError("invalid_tools", `'${key}' must be a list, got ${jsonType(record[key])}`);
    const names = new Set();
    record[key].forEach((item, index) => {
      let at = `${key}[${index}]`;
      let fn = item;
      if (key === "tools") {
        if (!isObject(item)) throw new DataError("invalid_tools", `${at} must be an object, got ${jsonType(item)}`);
        const extra = Object.keys(item).filter((k) => k !== "type" && k !== "function").sort();
        if (extra.length) throw new DataError("invalid_tools", `${at} has unknown keys ${JSON.stringify(extra)}; allowed: function, type`);
        if (item.type !== "function") throw new DataError("invalid_tools", `${at}.type must be 'function', got ${repr(item.type ?? null)}`);
        [fn, at] = [item.function, `${at}.function`];
      }
      if (!isObject(fn)) throw new DataError("invalid_tools", `${at} must be a function definition (an object)`);
      const extra = Object.keys(fn).filter((k) => !FUNCTION_KEYS.includes(k)).sort();
      if (extra.length) throw new DataError("invalid_tools", `${at} has unknown keys ${JSON.stringify(extra)}; allowed: ${[...FUNCTION_KEYS].sort().join(", ")}`);
      if (typeof fn.name !== "string" || !FUNCTION_NAME.test(fn.name)) {
        throw new DataError("invalid_tools", `${at}.name must be a function name (1 to 64 letters, digits, _ or -), got ${repr(fn.name ?? null)}`);
      }
      if (fn.description != null && typeof fn.description !== "string") throw new DataError("invalid_tools", `${at}.description must be a string, got ${jsonType(fn.description)}`);
      if (fn.parameters != null && !isObject(fn.parameters)) throw new DataError("invalid_tools", `${at}.parameters must be an object, got ${jsonType(fn.parameters)}`);
      if (fn.strict != null && typeof fn.strict !== "boolean") throw new DataError("invalid_tools", `${at}.strict must be true or false, got ${repr(fn.strict)}`);
      if (names.has(fn.name)) throw new DataError("invalid_tools", `${at}.name ${repr(fn.name)} is given twice`);
      names.add(fn.name);
    });
    return names;
  }

  /** A call's name, once its `{"name", "arguments"}` are checked (the arguments: the text of a JSON object). */
  function functionCall(value, at) {
    if (!isObject(value)) throw new DataError("invalid_tool_call", `${at} must be an object with name and arguments`);
    const extra = Object.keys(value).filter((k) => k !== "name" && k !== "arguments").sort();
    if (extra.length) throw new DataError("invalid_tool_call", `${at} has unknown keys ${JSON.stringify(extra)}; allowed: arguments, name`);
    if (typeof value.name !== "string" || !value.name) throw new DataError("invalid_tool_call", `${at}.name must be the function's name, got ${repr(value.name ?? null)}`);
    if (typeof value.arguments !== "string") throw new DataError("invalid_tool_call", `${at}.arguments must be JSON text (a string), got ${jsonType(value.arguments ?? null)}`);
    let parsed;
    try {
      parsed = JSON.parse(value.arguments);
    } catch (error) {
      throw new DataError("invalid_tool_call", `${at}.arguments is not valid JSON: ${error.message}`);
    }
    if (!isObject(parsed)) throw new DataError("invalid_tool_call", `${at}.arguments must be a JSON object, got ${jsonType(parsed)}`);
    return value.name;
  }

  /** An assistant message's `tool_calls` or legacy `function_call` as [{id (null: legacy), name}]. */
  function toolCalls(raw, where) {
    if (raw.tool_calls != null && raw.function_call != null) throw new DataError("invalid_tool_call", `${where} has both tool_calls and function_call`);
    if (raw.function_call != null) return [{ id: null, name: functionCall(raw.function_call, `${where}.function_call`) }];
    if (raw.tool_calls == null) return [];
    if (!Array.isArray(raw.tool_calls) || !raw.tool_calls.length) throw new DataError("invalid_tool_call", `${where}.tool_calls must be a non-empty list of calls`);
    return raw.tool_calls.map((call, index) => {
      const at = `${where}.tool_calls[${index}]`;
      if (!isObject(call)) throw new DataError("invalid_tool_call", `${at} must be an object, got ${jsonType(call)}`);
      const extra = Object.keys(call).filter((k) => !["id", "type", "function"].includes(k)).sort();
      if (extra.length) throw new DataError("invalid_tool_call", `${at} has unknown keys ${JSON.stringify(extra)}; allowed: function, id, type`);
      if (("type" in call ? call.type : "function") !== "function") throw new DataError("invalid_tool_call", `${at}.type must be 'function', got ${repr(call.type)}`);
      if (typeof call.id !== "string" || !call.id.trim()) throw new DataError("invalid_tool_call", `${at} needs an id (a string) for its result to name`);
      return { id: call.id, name: functionCall(call.function, `${at}.function`) };
    });
  }

  /** One OpenAI message: its role after flattening (tool results are user turns) and its weight. */
  function openaiMessage(raw, where) {
    if (!isObject(raw)) throw new DataError("invalid_message", `${where} must be an object, got ${jsonType(raw)}`);
    const extra = Object.keys(raw).filter((k) => !MESSAGE_KEYS.includes(k)).sort();
    if (extra.length) throw new DataError("invalid_message", `${where} has unknown keys ${JSON.stringify(extra)}; allowed: ${[...MESSAGE_KEYS].sort().join(", ")}`);
    const role = raw.role;
    if (![...ROLES, ...RESULT_ROLES].includes(role)) throw new DataError("invalid_role", `${where} has role ${repr(role)}; expected one of ${[...ROLES, ...RESULT_ROLES].join(", ")}`);
    for (const key of ["tool_calls", "function_call"]) {
      if (raw[key] != null && role !== "assistant") throw new DataError("invalid_tool_call", `${where} is a ${role} message: only assistant messages carry ${key}`);
    }
    if (raw.tool_call_id != null && role !== "tool") throw new DataError("invalid_tool_result", `${where} is a ${role} message: only tool messages carry tool_call_id`);
    let calls = [];
    if (role === "assistant") {
      calls = toolCalls(raw, where);
      const value = raw.content;
      if (!(calls.length && (value == null || (typeof value === "string" && !value.trim())))) {
        if (value == null) throw new DataError("empty_content", `${where} has neither content nor tool_calls`);
        content(value, where);
      }
    } else {
      content(raw.content, where);
    }
    if (role === "tool" && (typeof raw.tool_call_id !== "string" || !raw.tool_call_id.trim())) {
      throw new DataError("invalid_tool_result", `${where} needs the tool_call_id (a string) of the call it answers`);
    }
    if (role === "function" && (typeof raw.name !== "string" || !raw.name.trim())) {
      throw new DataError("invalid_tool_result", `${where} needs the name (a string) of the function that answered`);
    }
    let weight = 1;
    if ("weight" in raw) {
      if (role !== "assistant") throw new DataError("invalid_weight", `${where}: weight is only allowed on assistant messages`);
      if (raw.weight !== 0 && raw.weight !== 1) throw new DataError("invalid_weight", `${where}.weight must be 0 or 1, got ${repr(raw.weight)}`);
      weight = raw.weight;
    }
    return { role: RESULT_ROLES.includes(role) ? "user" : role, result: RESULT_ROLES.includes(role), weight, chars: typeof raw.content === "string" ? raw.content.length : 0, raw, calls };
  }

  /** Every call names one of the record's tools with a unique id; every result answers an unanswered
   * call of the assistant message before it; the conversation goes on only once every call has its result. */
  function checkToolFlow(parsed, tools, parallel) {
    const pending = new Map(); // "tool:<id>" or "function:<name>" -> where the call is
    const ids = new Set();
    parsed.forEach((message, index) => {
      const where = `messages[${index}]`;
      const role = message.raw.role;
      if (RESULT_ROLES.includes(role)) {
        const name = role === "tool" ? message.raw.tool_call_id : message.raw.name;
        if (!pending.delete(`${role}:${name}`)) {
          const answered = role === "tool" ? `tool_call_id ${repr(name)}` : `function ${repr(name)}`;
          throw new DataError("invalid_tool_result", `${where} answers ${answered}, which is no unanswered call of the assistant message before it`);
        }
        return;
      }
      if (pending.size) throw new DataError("invalid_tool_result", `${where} comes before the result of ${pending.values().next().value}`);
      const calls = message.calls.map((call, i) =>
        call.id === null ? { at: `${where}.function_call`, key: `function:${call.name}`, name: call.name } : { at: `${where}.tool_calls[${i}]`, key: `tool:${call.id}`, id: call.id, name: call.name },
      );
      if (calls.length > 1 && !parallel) throw new DataError("invalid_tool_call", `${where} has ${calls.length} calls but parallel_tool_calls is false`);
      for (const call of calls) {
        if (!tools.has(call.name)) {
          throw new DataError("invalid_tool_call", `${call.at} calls ${repr(call.name)}, but ${tools.size ? "it is not among the record's tools" : "the record has no tools"}`);
        }
        if (call.id !== undefined) {
          if (ids.has(call.id)) throw new DataError("invalid_tool_call", `${call.at}.id ${repr(call.id)} is used by an earlier call`);
          ids.add(call.id);
        }
        pending.set(call.key, call.at);
      }
    });
  }

  function fromOpenai(record) {
    const raw = record.messages;
    if (!Array.isArray(raw) || !raw.length) throw new DataError("invalid_message", "'messages' must be a non-empty list");
    const tools = checkTools(record);
    if ("parallel_tool_calls" in record && typeof record.parallel_tool_calls !== "boolean") {
      throw new DataError("invalid_tools", `'parallel_tool_calls' must be true or false, got ${repr(record.parallel_tool_calls)}`);
    }
    const parsed = raw.map((message, index) => Object.assign(openaiMessage(message, `messages[${index}]`), { number: index + 1 }));
    checkToolFlow(parsed, tools, record.parallel_tool_calls !== false);
    // consecutive tool results become one user turn, as flatten_tools writes them
    return parsed.filter((m, i) => !(i && m.result && parsed[i - 1].result));
  }

  function systemOf(record) {
    const system = text(record.system || "", "system", true);
    return system.trim() ? [{ role: "system", weight: 1, chars: system.length }] : [];
  }

  function fromAlpaca(record) {
    const messages = systemOf(record);
    const history = record.history || [];
    if (!Array.isArray(history)) throw new DataError("invalid_message", "'history' must be a list of [question, answer] pairs");
    history.forEach((pair, index) => {
      if (!Array.isArray(pair) || pair.length !== 2) throw new DataError("invalid_message", `history[${index}] must be a [question, answer] pair`);
      messages.push({ role: "user", weight: 1, chars: text(pair[0], `history[${index}][0]`).length });
      messages.push({ role: "assistant", weight: 1, chars: text(pair[1], `history[${index}][1]`).length });
    });
    const instruction = text(record.instruction, "instruction", true);
    const extra = text(record.input || "", "input", true);
    if (!instruction.trim() && !extra.trim()) throw new DataError("empty_content", "instruction and input are both empty");
    messages.push({ role: "user", weight: 1, chars: instruction.length + extra.length });
    messages.push({ role: "assistant", weight: 1, chars: text(record.output, "output").length });
    return messages;
  }

  function fromSharegpt(record) {
    const turns = record.conversations;
    if (!Array.isArray(turns) || !turns.length) throw new DataError("invalid_message", "'conversations' must be a non-empty list");
    const messages = systemOf(record);
    turns.forEach((turn, index) => {
      const where = `conversations[${index}]`;
      if (!isObject(turn)) throw new DataError("invalid_message", `${where} must be an object, got ${jsonType(turn)}`);
      const speaker = "from" in turn ? turn.from : turn.role;
      const role = typeof speaker === "string" ? SHAREGPT_ROLES[speaker] : undefined;
      if (!role) throw new DataError("invalid_role", `${where} is from ${repr(speaker)}; expected one of ${Object.keys(SHAREGPT_ROLES).join(", ")}`);
      messages.push({ role, weight: 1, chars: content("value" in turn ? turn.value : turn.content, where).length });
    });
    return messages;
  }

  function checkOrder(messages) {
    let expected = "user";
    let started = false;
    messages.forEach((message, position) => {
      const number = message.number || position + 1;
      if (message.role === "system") {
        if (started) throw new DataError("invalid_order", `message ${number} is a system message after the conversation began`);
        return;
      }
      if (message.role !== expected) {
        throw new DataError("invalid_order", `message ${number} is ${message.role} where ${expected} was expected: after optional system messages, user and assistant must alternate, starting with user`);
      }
      started = true;
      expected = expected === "user" ? "assistant" : "user";
    });
    if (!messages.some((m) => m.role === "assistant" && m.weight === 1)) throw new DataError("no_assistant_message", "no assistant message to train on (with weight 1)");
  }

  /** A record's format and messages; throws DataError. */
  function parseRecord(record) {
    if (!isObject(record)) throw new DataError("not_an_object", `expected a JSON object, got ${jsonType(record)}`);
    if (typeof String.prototype.isWellFormed === "function" && !JSON.stringify(record).isWellFormed()) {
      throw new DataError("invalid_text", "the record is not valid Unicode text (it holds a lone surrogate)");
    }
    let format;
    let messages;
    if ("messages" in record) [format, messages] = ["openai", fromOpenai(record)];
    else if ("conversations" in record) [format, messages] = ["sharegpt", fromSharegpt(record)];
    else if ("instruction" in record) [format, messages] = ["alpaca", fromAlpaca(record)];
    else {
      const keys = Object.keys(record).map(repr).join(", ") || "no keys";
      throw new DataError("unknown_format", `record has ${keys}; expected 'messages' (OpenAI chat), 'instruction' and 'output' (alpaca) or 'conversations' (ShareGPT)`);
    }
    checkOrder(messages);
    return { format, messages };
  }

  /** The file's text: UTF-8 (or UTF-16 with a BOM); else GB18030, with a warning. */
  function decode(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes[0] === 0xff && bytes[1] === 0xfe) return { text: new TextDecoder("utf-16le").decode(bytes) };
    if (bytes[0] === 0xfe && bytes[1] === 0xff) return { text: new TextDecoder("utf-16be").decode(bytes) };
    try {
      return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
    } catch {
      return { text: new TextDecoder("gb18030").decode(bytes), warning: t("ft.report.not_utf8") };
    }
  }

  /** The report of a training file: counts, and each invalid record's line (or array index), code and message. */
  function checkFile(name, textContent) {
    const report = { records: 0, valid: 0, answers: 0, longest: 0, formats: {}, errors: [], errorCount: 0, fileError: null, array: false };
    const add = (line, error) => {
      report.errorCount += 1;
      if (report.errors.length < MAX_ERRORS) report.errors.push({ line, code: error.code || "invalid_json", message: error.message });
    };
    const one = (line, record) => {
      report.records += 1;
      try {
        const { format, messages } = parseRecord(record);
        report.valid += 1;
        report.formats[format] = (report.formats[format] || 0) + 1;
        report.answers += messages.filter((m) => m.role === "assistant" && m.weight === 1).length;
        report.longest = Math.max(report.longest, messages.reduce((sum, m) => sum + (m.chars || 0), 0));
      } catch (error) {
        if (!(error instanceof DataError)) throw error;
        add(line, error);
      }
    };
    if (!/\.(jsonl|json)$/i.test(name)) {
      report.fileError = t("ft.report.extension");
      return report;
    }
    const body = textContent.replace(/^\uFEFF/, "");
    if (body.trimStart().startsWith("[")) {
      report.array = true;
      let records;
      try {
        records = JSON.parse(body);
      } catch (error) {
        report.fileError = t("ft.report.not_array", { error: error.message });
        return report;
      }
      records.forEach((record, index) => one(index + 1, record));
    } else {
      // "\n" only, as the server splits: a JSON string may hold U+2028
      body.split("\n").forEach((raw, index) => {
        if (!raw.trim()) return;
        let record;
        try {
          record = JSON.parse(raw);
        } catch (error) {
          report.records += 1;
          add(index + 1, new DataError("invalid_json", `not valid JSON: ${error.message}`));
          return;
        }
        one(index + 1, record);
      });
    }
    if (!report.records) report.fileError = t("ft.report.empty");
    return report;
  }

  // ---- the report and the upload ----------------------------------------------------------------

  let checked = null; // {file, report} of the chosen file

  function renderReport(file, report, warning) {
    const box = document.getElementById("report");
    const stat = (label, value) => el("div", { class: "ft-stat" }, el("div", { class: "small muted", text: label }), el("div", { class: "ft-stat-value", text: value }));
    const ok = !report.fileError && !report.errorCount;
    const formats = Object.entries(report.formats)
      .map(([format, n]) => `${t(`ft.format.${format}`)} ${fmt.int(n)}`)
      .join(" · ");
    const parts = [el("h4", { text: t("ft.report_title", { name: file.name }) })];
    if (warning) parts.push(el("p", { class: "notice small", text: warning }));
    if (report.fileError) parts.push(el("p", { class: "alert", role: "alert", text: report.fileError }));
    else {
      parts.push(
        el(
          "div",
          { class: "ft-stats" },
          stat(t("ft.report.records"), fmt.int(report.records)),
          stat(t("ft.report.valid"), fmt.int(report.valid)),
          stat(t("ft.report.invalid"), fmt.int(report.errorCount)),
          stat(t("ft.report.answers"), fmt.int(report.answers)),
          stat(t("ft.report.longest"), t("ft.report.chars", { n: fmt.int(report.longest) })),
          stat(t("ft.report.formats"), formats || "—"),
        ),
      );
      parts.push(el("p", { class: ok ? "ft-ok" : "alert", role: ok ? null : "alert", text: t(ok ? "ft.report.ok" : "ft.report.bad") }));
    }
    if (report.errors.length) {
      const where = report.array ? "ft.report.record" : "ft.report.line";
      parts.push(
        el("h5", { text: t("ft.report.errors") }),
        el(
          "ul",
          { class: "ft-errors", id: "report-errors" },
          report.errors.slice(0, SHOWN_ERRORS).map((error) =>
            el("li", { dataset: { line: String(error.line) } }, el("strong", { text: t(where, { line: error.line }) }), " ", el("code", { text: error.code }), " ", el("span", { text: error.message })),
          ),
        ),
      );
      if (report.errorCount > SHOWN_ERRORS) parts.push(el("p", { class: "small muted", text: t("ft.report.more", { n: fmt.int(report.errorCount - SHOWN_ERRORS) }) }));
    }
    box.replaceChildren(el("div", { class: "ft-report" }, parts));
    document.getElementById("upload").disabled = !ok;
  }

  async function onChoose() {
    const input = document.getElementById("train-file");
    const file = input.files[0];
    const status = document.getElementById("upload-status");
    status.replaceChildren();
    document.getElementById("upload").disabled = true;
    checked = null;
    if (!file) {
      document.getElementById("report").replaceChildren();
      return;
    }
    document.getElementById("report").replaceChildren(el("p", { class: "muted", text: t("ft.report.reading") }));
    try {
      const { text: content, warning } = decode(await file.arrayBuffer());
      const report = checkFile(file.name, content);
      checked = { file, report };
      renderReport(file, report, warning);
    } catch (err) {
      RT.showError(document.getElementById("report"), err);
    }
  }

  async function onUpload(event) {
    event.preventDefault();
    if (!checked || checked.report.errorCount || checked.report.fileError) return;
    const button = document.getElementById("upload");
    const status = document.getElementById("upload-status");
    button.disabled = true;
    status.replaceChildren(el("span", { class: "muted", text: t("ft.uploading") }));
    try {
      const form = new FormData();
      form.append("purpose", "fine-tune");
      form.append("file", checked.file, checked.file.name);
      const uploaded = await api("POST", "/v1/files", form);
      status.replaceChildren(el("span", { class: "ft-ok", text: t("ft.uploaded", { id: uploaded.id }) }));
      await loadFiles(uploaded.id);
    } catch (err) {
      RT.showError(status, err);
      button.disabled = false;
    }
  }

  // ---- the job form ------------------------------------------------------------------------------

  let files = [];

  function fileOption(file) {
    return el("option", { value: file.id, text: `${file.filename} (${fmt.bytes(file.bytes)})` });
  }

  /** Under a file choice: the chosen file's id and upload time (names may repeat). */
  function describeChoice(select, help, fallback) {
    const file = files.find((f) => f.id === select.value);
    help.textContent = file ? t("ft.file_created", { id: file.id, date: fmt.date(file.created_at) }) : fallback;
  }

  function describeFiles() {
    describeChoice(document.getElementById("f-training-file"), document.getElementById("f-training-file-help"), files.length ? "" : t("ft.no_files"));
    describeChoice(document.getElementById("f-validation-file"), document.getElementById("f-validation-file-choice"), "");
  }

  async function loadFiles(select) {
    const list = await api("GET", "/v1/files?purpose=fine-tune&limit=1000");
    files = list.data; // newest first
    const training = document.getElementById("f-training-file");
    const validation = document.getElementById("f-validation-file");
    const keepTraining = select || training.value;
    const keepValidation = validation.value;
    training.replaceChildren(...files.map(fileOption));
    validation.replaceChildren(el("option", { value: "", text: t("ft.validation_none") }), ...files.map(fileOption));
    if (keepTraining && files.some((f) => f.id === keepTraining)) training.value = keepTraining;
    if (keepValidation && files.some((f) => f.id === keepValidation)) validation.value = keepValidation;
    describeFiles();
  }

  async function loadModels() {
    const models = await api("GET", "/v1/models");
    const base = models.data.filter((m) => (m.kind || "chat") === "chat" && !m.parent);
    document.getElementById("f-model").replaceChildren(...base.map((m) => el("option", { value: m.id, text: m.id })));
  }

  /** The request body: only what the user set; an empty field is the default its help names. */
  function requestBody() {
    const value = (id) => document.getElementById(id).value.trim();
    const body = { model: value("f-model"), training_file: value("f-training-file") };
    if (value("f-validation-file")) body.validation_file = value("f-validation-file");
    if (value("f-suffix")) body.suffix = value("f-suffix");
    if (value("f-seed")) body.seed = Number(value("f-seed"));
    const objects = { hyperparameters: {}, lora: {}, training: {} };
    for (const input of document.querySelectorAll("#job-form [data-obj]")) {
      const { obj, key, kind } = input.dataset;
      if (kind === "bool") {
        if (input.checked !== (input.dataset.default === "true")) objects[obj][key] = input.checked;
      } else if (kind === "select") {
        if (input.value !== input.dataset.default) objects[obj][key] = input.value;
      } else if (input.value.trim() !== "") {
        objects[obj][key] = kind === "int" ? parseInt(input.value, 10) : Number(input.value);
      }
    }
    const boxes = [...document.querySelectorAll("#target-modules input[type=checkbox]")];
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    if (chosen.length !== boxes.length) objects.lora.target_modules = chosen;
    if (Object.keys(objects.hyperparameters).length) body.method = { type: "supervised", supervised: { hyperparameters: objects.hyperparameters } };
    if (Object.keys(objects.lora).length) body.lora = objects.lora;
    if (Object.keys(objects.training).length) body.training = objects.training;
    return body;
  }

  /** The form control an API error's `param` names (e.g. method.supervised.hyperparameters.n_epochs). */
  function controlFor(param) {
    if (!param) return null;
    const controls = [...document.querySelectorAll("#job-form [data-param]")];
    const match = controls.find((c) => param === c.dataset.param || param.endsWith(`.${c.dataset.param}`) || param.startsWith(`${c.dataset.param}[`));
    return match || null;
  }

  async function onStart(event) {
    event.preventDefault();
    const error = document.getElementById("job-error");
    const status = document.getElementById("start-status");
    const button = document.getElementById("start");
    error.replaceChildren();
    document.querySelectorAll("#job-form [aria-invalid]").forEach((c) => c.removeAttribute("aria-invalid"));
    button.disabled = true;
    status.textContent = t("ft.starting");
    try {
      const job = await api("POST", "/v1/fine_tuning/jobs", requestBody());
      location.href = `/fine-tuning/${encodeURIComponent(job.id)}`;
    } catch (err) {
      status.textContent = "";
      button.disabled = false;
      RT.showError(error, err);
      const control = controlFor(err.param);
      if (control) {
        control.setAttribute("aria-invalid", "true");
        const details = control.closest("details");
        if (details) details.open = true;
        (control.matches("fieldset") ? control.querySelector("input") : control).focus();
      }
    }
  }

  // ---- the jobs list -----------------------------------------------------------------------------

  let jobs = [];
  let hasMore = false;

  /** A cell, its content in one block: on a phone the cell shows its column's name (`data-label`) before it. */
  const cell = (label, ...children) => el("td", { dataset: { label } }, el("div", {}, ...children));

  function jobRow(job) {
    const link = el("a", { href: `/fine-tuning/${encodeURIComponent(job.id)}`, class: "mono", text: job.id });
    const tuned = job.fine_tuned_model
      ? el("span", {}, el("span", { class: "mono", text: job.fine_tuned_model }), " ", el("a", { href: `/?model=${encodeURIComponent(job.fine_tuned_model)}`, text: t("ft.try") }))
      : el("span", { class: "muted", text: "—" });
    return el(
      "tr",
      { dataset: { id: job.id } },
      cell(t("ft.col.id"), link, job.suffix ? el("div", { class: "small muted", text: job.suffix }) : null),
      cell(t("ft.col.model"), job.model),
      cell(t("common.status"), RT.badge(job.status)),
      cell(t("common.created"), fmt.date(job.created_at)),
      cell(t("ft.col.fine_tuned_model"), tuned),
    );
  }

  let shown = null; // what the table shows: redrawn only when it changes (a focused link stays focused)

  function renderJobs() {
    const signature = JSON.stringify([hasMore, jobs.map((j) => [j.id, j.status, j.fine_tuned_model])]);
    if (signature === shown) return;
    shown = signature;
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren(...(jobs.length ? jobs.map(jobRow) : [el("tr", {}, el("td", { colspan: "5", class: "muted", text: t("ft.no_jobs") }))]));
    document.getElementById("more").hidden = !hasMore;
  }

  async function loadJobs(more) {
    const after = more && jobs.length ? `&after=${encodeURIComponent(jobs[jobs.length - 1].id)}` : "";
    const page = await api("GET", `/v1/fine_tuning/jobs?limit=50${after}`);
    if (more || jobs.length <= page.data.length) {
      jobs = more ? jobs.concat(page.data) : page.data;
      hasMore = page.has_more;
    } else {
      // a refresh replaces the first page and keeps the pages loaded after it
      const ids = new Set(page.data.map((j) => j.id));
      jobs = page.data.concat(jobs.filter((j) => !ids.has(j.id))); // the others are older than this page
    }
    renderJobs();
  }

  async function refreshActive() {
    if (!jobs.some((job) => ACTIVE.includes(job.status))) return;
    try {
      await loadJobs(false);
    } catch {
      // the next refresh tries again; the list stays as it was
    }
  }

  async function start() {
    const error = document.getElementById("page-error");
    document.getElementById("train-file").addEventListener("change", onChoose);
    document.getElementById("upload-form").addEventListener("submit", onUpload);
    document.getElementById("job-form").addEventListener("submit", onStart);
    document.getElementById("f-training-file").addEventListener("change", describeFiles);
    document.getElementById("f-validation-file").addEventListener("change", describeFiles);
    document.getElementById("more").addEventListener("click", () => loadJobs(true).catch((err) => RT.showError(error, err)));
    try {
      await Promise.all([loadJobs(false), loadFiles(), loadModels()]);
    } catch (err) {
      RT.showError(error, err);
    }
    setInterval(refreshActive, 5000);
  }

  start();
})();
